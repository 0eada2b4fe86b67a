"""What the cloud service itself provided: instances, activity, the error handler."""
