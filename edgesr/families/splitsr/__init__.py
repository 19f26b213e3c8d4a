"""The splitsr family: training and deploy graphs, Keras twin, registration."""
