"""Slack: the warranty review notifier (`notifier`) and signed interactivity (`interactions`)."""
