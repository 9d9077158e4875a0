"""Raw dataset -> info-file converters, called by ``tools/create_data.py``."""
