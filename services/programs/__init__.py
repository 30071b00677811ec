"""Programs that wire the services to the transports: command line, running servers, clients."""
