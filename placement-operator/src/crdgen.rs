//! `crdgen`: writes every placement CRD to `<dir>/<plural>.placement.dev.yaml` (the files under
//! `deploy/crds` are generated, never edited by hand), or with `--check` reports which files differ from
//! what the code generates, so CI fails when a CRD type changed without regenerating.

use placement_kube::crd::{self, CrdError, GENERATED_HEADER};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why crdgen could not run.
#[derive(Debug, thiserror::Error)]
pub enum CrdgenError {
    #[error(transparent)]
    Render(#[from] CrdError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CrdgenError + '_ {
    move |source| CrdgenError::Io { path: path.to_path_buf(), source }
}

/// A file on disk that does not match the generated CRDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A CRD file is missing.
    Missing(PathBuf),
    /// A CRD file's content differs from what is generated.
    Differs(PathBuf),
    /// A generated file (it has the header) that no CRD produces any more.
    Stale(PathBuf),
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Missing(p) => write!(f, "{} is missing", p.display()),
            Drift::Differs(p) => write!(f, "{} differs from the generated CRD", p.display()),
            Drift::Stale(p) => write!(f, "{} is generated but no CRD produces it any more", p.display()),
        }
    }
}

/// Write every CRD into `dir` (created if needed); returns the files written, in CRD order. Files
/// already up to date are left untouched.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>, CrdgenError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for (name, text) in crd::rendered_files()? {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(text.as_str()) {
            std::fs::write(&path, &text).map_err(io(&path))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// Compare `dir` with the generated CRDs; an empty list means everything is up to date.
pub fn check(dir: &Path) -> Result<Vec<Drift>, CrdgenError> {
    let files = crd::rendered_files()?;
    let mut drift = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(current) if current == *text => {}
            Ok(_) => drift.push(Drift::Differs(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => drift.push(Drift::Missing(path)),
            Err(e) => return Err(io(&path)(e)),
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut stale: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                name.ends_with(".yaml") && !files.iter().any(|(f, _)| f == name)
            })
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with(GENERATED_HEADER)))
            .collect();
        stale.sort();
        drift.extend(stale.into_iter().map(Drift::Stale));
    }
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_crds_are_up_to_date() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds");
        let drift = check(&dir).expect("check");
        let lines: Vec<String> = drift.iter().map(ToString::to_string).collect();
        assert!(lines.is_empty(), "run `cargo run -p placement-operator -- crdgen`:\n{}", lines.join("\n"));
    }

    #[test]
    fn write_then_check_then_drift() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("deploy/crds");
        assert_eq!(check(&out).expect("check").len(), 6, "all missing before the first run");
        let written = write(&out).expect("write");
        assert_eq!(written.len(), 6);
        assert!(written[0].ends_with("zonebalancers.placement.dev.yaml"));
        assert_eq!(check(&out).expect("check"), vec![]);

        let pd = out.join("poddistributions.placement.dev.yaml");
        let edited = std::fs::read_to_string(&pd).expect("read").replace("maxItems: 16", "maxItems: 17");
        std::fs::write(&pd, edited).expect("write");
        let old = out.join("oldthings.placement.dev.yaml");
        std::fs::write(&old, format!("{GENERATED_HEADER}\nkind: CustomResourceDefinition\n")).expect("write");
        std::fs::write(out.join("kustomization.yaml"), "resources: []\n").expect("write");
        std::fs::remove_file(out.join("nodeclasses.placement.dev.yaml")).expect("remove");
        let drift = check(&out).expect("check");
        assert_eq!(
            drift,
            vec![
                Drift::Differs(pd.clone()),
                Drift::Missing(out.join("nodeclasses.placement.dev.yaml")),
                Drift::Stale(old.clone()),
            ],
            "hand-written files without the header are not reported"
        );
        assert!(drift[0].to_string().ends_with("poddistributions.placement.dev.yaml differs from the generated CRD"));
        write(&out).expect("write");
        assert_eq!(check(&out).expect("check"), vec![Drift::Stale(old)], "stale files are reported, not deleted");
    }
}
