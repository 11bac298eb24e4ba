"""Files: model loading and saving, streamed tensor data, staged (atomic) outputs, path safety."""
