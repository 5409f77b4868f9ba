"""Training side of f2f-cam: dataset builder, pix2pix networks, training loop, export,
and the synthetic clips that make test and training data from a photo (``synth``).

``trainers`` imports ``f2f_cam`` (the sketch renderer, the persona format); ``f2f_cam``
imports ``trainers`` only inside the ``dataset``, ``train``, ``export`` and ``bench``
commands (``bench`` for its generated default clip and ``--train``).
"""
