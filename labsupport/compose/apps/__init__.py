"""Programs that run inside notebook 11's containers, not in the lab's Python.

They use only the modules of Debian's ``libpython3.X-minimal`` (socket,
threading, os), because that is all the python runtime image carries.
labsupport.compose.services copies them into their images as files.
"""
