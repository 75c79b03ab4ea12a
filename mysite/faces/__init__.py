"""Registered faces: the database of embeddings (``store.py``) and its in-memory search (``index.py``).

No Flask here: the web routes (``mysite/web/faces.py``) call these; the embeddings
themselves come from the vision model (``mysite/vision/faceid.py``).
"""
