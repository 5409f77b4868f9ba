"""Training side of f2f-cam: dataset builder, pix2pix networks, training loop, export.

``trainers`` imports ``f2f_cam`` (the sketch renderer, the persona format); ``f2f_cam``
imports ``trainers`` only inside the ``train``/``export`` commands.
"""
