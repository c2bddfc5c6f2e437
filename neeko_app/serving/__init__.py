"""What both servers (`neeko api`, `neeko serve`) share at the HTTP level: the error body,
the request limits and the HTTP server's timeouts."""
