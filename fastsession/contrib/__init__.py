"""Framework adapters: Django (SESSION_ENGINE) and Flask (SessionInterface). No storage logic here."""
