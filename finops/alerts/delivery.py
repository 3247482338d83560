def deliveries_dispatch(delivery_ids):
    """Replaced by h-channels."""
