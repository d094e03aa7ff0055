"""The one-page HTML report of the stored verdicts and runs, and the TensorBoard sink."""
