"""f2f-cam: appear on any video call as a trained persona.

webcam -> face landmarks (MediaPipe) -> sketch -> pix2pix generator (TorchScript)
-> virtual camera "Face2Face Cam". Heavy libraries (torch, mediapipe, pystray) are
imported lazily by the modules that need them, so ``import f2f_cam`` is instant.
"""

__version__ = "0.1.0"
