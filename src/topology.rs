//! Conversion of Kubernetes Nodes into the scheduler's topology model.
