"""5-point face alignment: the one pre-processing shared by runtime, calibration, evaluation and training.

A similarity transform (rotation, uniform scale, translation; Umeyama's least squares) maps the
detector's 5 landmarks onto the encoder's 112x112 template, the same template and warp as
OpenCV's ``FaceRecognizerSF.alignCrop``. Crops stay BGR uint8 pixels; each encoder normalises
its input inside the model.
"""

from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 112
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity matrix that maps ``src`` points onto ``dst`` in the least-squares sense."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / n
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = dst_mean - scale * rot @ src_mean
    return m


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp a face to the ``size`` x ``size`` template; returns a BGR uint8 crop.

    The landmarks are rounded to 1/1000 px first: the detector's float arithmetic differs between CPUs
    in the fifth decimal (x86 AVX2 and Arm NEON sum in different orders), which moved a few crop pixels
    by one grey level and the int8 encoder's output with them (cosine 0.997 between x86 and aarch64);
    rounded, the crops are the same on both (measured in docs/ARM.md)."""
    template = TEMPLATE_112 * (size / CROP_SIZE)
    points = np.round(np.asarray(landmarks, np.float64).reshape(5, 2), 3).astype(np.float32)
    m = similarity_transform(points, template)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
