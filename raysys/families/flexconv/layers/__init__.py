"""FlexConv's layers (torch only: no Ray, no MLflow).

``ckconv``: CKConv and FlexConv; ``kernels``: the continuous kernel generators (MAGNet,
MFN-Gabor, SIREN); ``fftconv``: "same" convolution, direct or by FFT; ``srf``: the N-Jet
(structured receptive field) baseline. Import the modules directly, e.g.
``from raysys.families.flexconv.layers.ckconv import FlexConv``.
"""
