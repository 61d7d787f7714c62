"""The teacher's solutions: one module per notebook, ``solve(k)`` per exercise.

Each solution does what a learner would type into the notebook, through
labsupport, so that running them and then grading proves every check can be
passed. Processes a solution leaves running are kept in its module's
``running`` list; ``python -m labsupport reset NN`` stops them.
"""
