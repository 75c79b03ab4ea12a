"""Computer vision on numpy images: pure OpenCV, nothing from Flask."""
