"""The stream processor: consumes the EventLog and keeps derived state fresh."""
