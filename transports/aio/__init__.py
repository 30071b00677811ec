"""Asyncio drivers: TCP, UDP, the shared server context, and several processes on one port."""
