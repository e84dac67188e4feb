"""Scaling laws: an IsoFLOP sweep on the user's own data, the fits, and plans for larger runs.

sweep.py trains a grid of (compute budget, model size) points with the one training loop; fit.py
fits the IsoFLOP parabolas and the parametric law; report.py draws and writes them up; plan.py turns
a fit into a compute-optimal model size and token count for a budget.
"""
