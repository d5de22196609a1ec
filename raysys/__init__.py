"""raysys: structured-convolution experiments on Ray (Train, Data, Tune) with MLflow."""
__version__ = "0.1.0"
