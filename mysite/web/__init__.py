"""The HTTP side: Flask only, no OpenCV."""
