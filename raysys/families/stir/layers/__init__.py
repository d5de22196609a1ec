"""Scale-equivariant layers of "Just a Matter of Scale?" (STIR) and its baselines.

- :mod:`.siconv`: ``KernelResize``, ``SiConv2d``, ``ScalePool``, ``GlobalMaxPool``.
- :mod:`.baselines`: ``XuConv2d``, ``KanazawaConv2d``, ``gaussian_pyramid``.
- :mod:`.sesn`: Hermite and DISCO steerable bases and the SESN convolutions.
"""
