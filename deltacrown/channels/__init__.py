"""Delivery channels as plain adapters: SMTP sending, email rendering, the Discord
webhook client with its shared rate limiter, and which webhook URLs are accepted.
They know nothing of notifications or who a message is for: the notifications part
decides what is sent where and calls these."""
