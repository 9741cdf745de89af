//! alert-triage-operator: turns SRE runbooks into a Kubernetes controller.
#![forbid(unsafe_code)]

pub mod crd;
