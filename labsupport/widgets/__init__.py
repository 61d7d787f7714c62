"""Live views for the notebooks: ipywidgets that watch the real system while it changes.

Imported only by notebooks, so the rest of the lab never needs ipywidgets
or matplotlib.
"""
