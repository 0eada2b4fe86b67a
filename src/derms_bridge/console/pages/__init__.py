"""The console's pages, one module each; app.py includes their routers."""
