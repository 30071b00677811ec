"""Application logic of the testbed: text, numbers and bank services.

Services know nothing of sockets, clocks or retries; they take arguments,
return results and raise typed ``ServiceError``s.
"""
