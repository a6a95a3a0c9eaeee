"""Request and answer models of calls between Homeroom services, written once for both sides."""
