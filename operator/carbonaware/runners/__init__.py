"""Pure manifest builders for the children the operator creates, and the SSH runner."""
