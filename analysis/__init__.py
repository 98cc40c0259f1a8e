"""kpisat: how the weighting of sales KPIs changes what happens to customers."""

__version__ = "0.1.0"
