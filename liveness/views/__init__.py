"""Read models the API serves: queues, a person's file, indicators and the list feed."""
