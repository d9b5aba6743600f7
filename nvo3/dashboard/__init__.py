"""The dashboard and tenant portal: a Flask application served by waitress.

Every NETCONF call made for a logged-in person runs with that person's own credentials against
the root vCenter and the nDirector(s), so the servers' access control decides what each one
sees and may do. See `nvo3/dashboard/app.py` for the routes.
"""
