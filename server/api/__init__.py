"""HTTP routes: each blueprint validates input, calls the domain and shapes the answer."""
