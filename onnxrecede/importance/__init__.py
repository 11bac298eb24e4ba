"""Importances: the file format (keys, validation, resolution) and the criteria that compute them."""
