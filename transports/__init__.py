"""Moving messages: wire codec, framing, endpoints, fault layer and drivers."""
