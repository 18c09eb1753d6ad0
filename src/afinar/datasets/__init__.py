"""Training-data formats: validation, chat rendering with label masks, token counts, estimates."""
