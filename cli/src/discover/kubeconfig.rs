//! Which kubeconfig to use: `--kubeconfig`, `KUBECONFIG`, in-cluster, home, `SUDO_USER`'s; loading it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{error_chain, DiscoverError};

/// The parts of the process environment that decide the client configuration. Tests build one by
/// hand; [`discover`](super::discover) uses [`ConfigEnv::from_process`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigEnv {
    /// `KUBECONFIG` (a `:`-separated list).
    pub kubeconfig: Option<OsString>,
    /// `KUBERNETES_SERVICE_HOST` is set: running in a pod.
    pub in_cluster: bool,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// Under `sudo` as root: the invoking user (`SUDO_USER`) and their home directory from the
    /// passwd database.
    pub sudo_user: Option<(String, PathBuf)>,
}

impl ConfigEnv {
    /// Reads the environment of this process.
    pub fn from_process() -> ConfigEnv {
        let sudo_user = std::env::var("SUDO_USER").ok();
        let is_root = nix::unistd::geteuid().is_root();
        let sudo = sudo_user_home(sudo_user.as_deref(), is_root, home_from_passwd);
        ConfigEnv {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            sudo_user: sudo.map(|h| (sudo_user.unwrap_or_default(), h)),
        }
    }
}

/// A user's home directory from the passwd database (`getpwnam`, so NSS sources count too).
pub fn home_from_passwd(user: &str) -> Option<PathBuf> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Under `sudo` (we are root and `SUDO_USER` names someone else), the invoking user's home
/// directory, looked up with `home_of`.
pub fn sudo_user_home(
    sudo_user: Option<&str>,
    is_root: bool,
    home_of: impl Fn(&str) -> Option<PathBuf>,
) -> Option<PathBuf> {
    let user = sudo_user.filter(|u| !u.is_empty() && *u != "root")?;
    if !is_root {
        return None;
    }
    home_of(user).filter(|h| !h.as_os_str().is_empty())
}

/// Which client configuration discovery uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChoice {
    /// `--kubeconfig FILE`.
    Flag(PathBuf),
    /// The files listed in `KUBECONFIG` (merged like kubectl merges them).
    EnvList(Vec<PathBuf>),
    /// The pod's service account.
    InCluster,
    /// `$HOME/.kube/config`.
    Home(PathBuf),
    /// The `sudo` invoker's `~/.kube/config`.
    SudoUser {
        /// `SUDO_USER`.
        user: String,
        /// Their kubeconfig.
        path: PathBuf,
    },
    /// Nothing configured.
    Nothing,
}

/// Chooses the client configuration: `--kubeconfig`, `KUBECONFIG`, in-cluster,
/// `~/.kube/config`, the `sudo` invoker's `~/.kube/config`, in that order. Home files count only
/// when they exist; `--kubeconfig` and `KUBECONFIG` count whenever given (a missing file is then
/// an error, not a silent fallback).
pub fn choose_config(flag: Option<&Path>, env: &ConfigEnv) -> ConfigChoice {
    if let Some(p) = flag {
        return ConfigChoice::Flag(p.to_path_buf());
    }
    if let Some(list) = &env.kubeconfig {
        let paths: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return ConfigChoice::EnvList(paths);
        }
    }
    if env.in_cluster {
        return ConfigChoice::InCluster;
    }
    let home_cfg = env.home.as_ref().map(|h| h.join(".kube").join("config"));
    if let Some(p) = &home_cfg {
        if p.is_file() {
            return ConfigChoice::Home(p.clone());
        }
    }
    if let Some((user, home)) = &env.sudo_user {
        let p = home.join(".kube").join("config");
        if Some(&p) != home_cfg.as_ref() && p.is_file() {
            return ConfigChoice::SudoUser {
                user: user.clone(),
                path: p,
            };
        }
    }
    ConfigChoice::Nothing
}

pub(super) async fn load_config(
    choice: &ConfigChoice,
    context: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Option<kube::Config>, DiscoverError> {
    let (files, label): (Vec<PathBuf>, PathBuf) = match choice {
        ConfigChoice::Nothing => return Ok(None),
        ConfigChoice::InCluster => {
            if let Some(c) = context {
                warnings.push(format!(
                    "--context {c} ignored: using the in-cluster service account (pass --kubeconfig to use a kubeconfig)"
                ));
            }
            let config = kube::Config::incluster().map_err(|e| DiscoverError::InCluster {
                reason: error_chain(&e),
            })?;
            return Ok(Some(config));
        }
        ConfigChoice::Flag(p) | ConfigChoice::Home(p) | ConfigChoice::SudoUser { path: p, .. } => {
            (vec![p.clone()], p.clone())
        }
        ConfigChoice::EnvList(ps) => {
            let existing: Vec<PathBuf> = ps.iter().filter(|p| p.exists()).cloned().collect();
            if existing.is_empty() {
                return Err(DiscoverError::KubeconfigUnreadable {
                    path: std::env::join_paths(ps)
                        .map(PathBuf::from)
                        .unwrap_or_else(|_| ps[0].clone()),
                    reason: "KUBECONFIG names no existing file".into(),
                });
            }
            let label = std::env::join_paths(&existing)
                .map(PathBuf::from)
                .unwrap_or_else(|_| existing[0].clone());
            (existing, label)
        }
    };
    if let ConfigChoice::SudoUser { user, path } = choice {
        log::debug!("using {user}'s kubeconfig {} (SUDO_USER)", path.display());
    }
    let mut merged: Option<kube::config::Kubeconfig> = None;
    for f in &files {
        let kc = kube::config::Kubeconfig::read_from(f).map_err(|e| kubeconfig_error(f, e))?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).map_err(|e| kubeconfig_error(&label, e))?,
        });
    }
    let kc = merged.unwrap_or_default();
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| match e {
            kube::config::KubeconfigError::LoadContext(name) => DiscoverError::ContextNotFound {
                path: label.clone(),
                context: name,
            },
            e => kubeconfig_error(&label, e),
        })?;
    Ok(Some(config))
}

fn kubeconfig_error(path: &Path, e: kube::config::KubeconfigError) -> DiscoverError {
    match e {
        kube::config::KubeconfigError::ReadConfig(io, p) => DiscoverError::KubeconfigUnreadable {
            path: p,
            reason: io.to_string(),
        },
        e => DiscoverError::KubeconfigInvalid {
            path: path.to_path_buf(),
            reason: error_chain(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_home_lookup() {
        let lookup = |u: &str| (u == "alice").then(|| PathBuf::from("/home/alice"));
        assert_eq!(
            sudo_user_home(Some("alice"), true, lookup),
            Some(PathBuf::from("/home/alice"))
        );
        // Not root: sudo to another user, or SUDO_USER left over in the environment.
        assert_eq!(sudo_user_home(Some("alice"), false, lookup), None);
        assert_eq!(sudo_user_home(Some("bob"), true, lookup), None);
        assert_eq!(
            sudo_user_home(Some("root"), true, |_| Some(PathBuf::from("/root"))),
            None
        );
        assert_eq!(sudo_user_home(Some(""), true, lookup), None);
        assert_eq!(sudo_user_home(None, true, lookup), None);
        // The real passwd database knows root.
        assert_eq!(home_from_passwd("root"), Some(PathBuf::from("/root")));
        assert_eq!(home_from_passwd("podnet-no-such-user"), None);
    }

    #[test]
    fn config_choice_order() {
        let tmp = std::env::temp_dir().join(format!("podnet-choice-{}", std::process::id()));
        let home = tmp.join("root");
        let alice = tmp.join("alice");
        for h in [&home, &alice] {
            std::fs::create_dir_all(h.join(".kube")).unwrap();
            std::fs::write(h.join(".kube/config"), "").unwrap();
        }
        let full = ConfigEnv {
            kubeconfig: Some(OsString::from("/a:/b")),
            in_cluster: true,
            home: Some(home.clone()),
            sudo_user: Some(("alice".into(), alice.clone())),
        };
        let flag = Path::new("/flag");
        assert_eq!(
            choose_config(Some(flag), &full),
            ConfigChoice::Flag(flag.into())
        );
        assert_eq!(
            choose_config(None, &full),
            ConfigChoice::EnvList(vec!["/a".into(), "/b".into()])
        );
        let env = ConfigEnv {
            kubeconfig: Some(OsString::from("")),
            ..full.clone()
        };
        assert_eq!(choose_config(None, &env), ConfigChoice::InCluster);
        let env = ConfigEnv {
            in_cluster: false,
            ..env
        };
        assert_eq!(
            choose_config(None, &env),
            ConfigChoice::Home(home.join(".kube/config"))
        );
        std::fs::remove_file(home.join(".kube/config")).unwrap();
        assert_eq!(
            choose_config(None, &env),
            ConfigChoice::SudoUser {
                user: "alice".into(),
                path: alice.join(".kube/config")
            }
        );
        std::fs::remove_file(alice.join(".kube/config")).unwrap();
        assert_eq!(choose_config(None, &env), ConfigChoice::Nothing);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
