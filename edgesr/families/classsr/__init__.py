"""The classsr family: training and deploy graphs, Keras twin, registration."""
