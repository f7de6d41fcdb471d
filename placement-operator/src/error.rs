//! The operator's errors: one enum, with a bounded [`Error::metric_label`] for the reconcile-error
//! metric and messages that name the object and field.

use placement_kube::crd::CrdError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// A placement resource's spec is invalid (the API server's CEL rules catch most of these first).
    #[error("{object}: {source}")]
    Spec {
        object: String,
        #[source]
        source: CrdError,
    },
    /// A Kubernetes object could not be read into placement terms.
    #[error(transparent)]
    Convert(#[from] placement_kube::convert::ConvertError),
    /// The resource usage source (metrics.k8s.io) gave nothing usable.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The placement resources are not installed in the cluster.
    #[error("{0}")]
    MissingCrds(String),
}

impl Error {
    /// Wraps a kube error with what was being done (`patching Deployment shop/web`).
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube { action: action.into(), source }
    }

    /// One of a fixed set of values, for metric labels.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 409 => "conflict",
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 429 => "too_many_requests",
            Error::Kube { source: kube::Error::Api(s), .. } if s.code == 404 => "not_found",
            Error::Kube { .. } => "kube",
            Error::Spec { .. } => "spec",
            Error::Convert(_) => "convert",
            Error::Metrics(_) => "metrics",
            Error::MissingCrds(_) => "missing_crds",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
