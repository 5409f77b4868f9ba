"""Files bundled with f2f-cam: the MediaPipe face landmarker and bundled personas.

In a checkout this is the top-level ``models/`` folder; installed, it is the package
``f2f_cam.models`` (see ``[tool.setuptools]`` in pyproject.toml), so code finds the
files with ``importlib.resources`` either way (``f2f_cam.paths.bundled_models_dir``).
"""
