"""Request and answer models of calls one Homeroom service makes to another, written once
and imported by both sides (the server's route and every caller's client)."""
