"""The ecbsr family: training and deploy graphs, Keras twin, registration."""
