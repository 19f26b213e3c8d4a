"""The smsr family: training and deploy graphs, Keras twin, registration."""
