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
    /// Under `sudo` as root (euid 0, `SUDO_UID` or `SUDO_USER` naming someone other than root):
    /// the invoking user's uid. Credential plugins then run as root: see
    /// [`check_credential_plugins`].
    pub sudo_uid: Option<u32>,
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
            sudo_user: sudo.map(|h| (sudo_user.clone().unwrap_or_default(), h)),
            sudo_uid: sudo_invoker_uid(
                std::env::var("SUDO_UID").ok().as_deref(),
                sudo_user.as_deref(),
                is_root,
                |u| {
                    nix::unistd::User::from_name(u)
                        .ok()
                        .flatten()
                        .map(|u| u.uid.as_raw())
                },
            ),
        }
    }
}

/// Under `sudo` (we are root and `SUDO_UID`, else `SUDO_USER` looked up with `uid_of`, names a
/// user other than root), the invoking user's uid.
pub fn sudo_invoker_uid(
    sudo_uid: Option<&str>,
    sudo_user: Option<&str>,
    is_root: bool,
    uid_of: impl Fn(&str) -> Option<u32>,
) -> Option<u32> {
    if !is_root {
        return None;
    }
    let uid = match sudo_uid.and_then(|u| u.trim().parse::<u32>().ok()) {
        Some(u) => u,
        None => uid_of(sudo_user.filter(|u| !u.is_empty())?)?,
    };
    (uid != 0).then_some(uid)
}

/// A user entry of a kubeconfig that makes the client run something: an `exec` credential
/// plugin (a program) or an `auth-provider` (gcp/azure/oidc, which may run a helper command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialPlugin {
    /// The kubeconfig user's name.
    pub user: String,
    /// `exec` or `auth-provider`.
    pub kind: &'static str,
    /// The command (`exec`), or the provider's name.
    pub what: String,
}

/// The credential plugins of the user the client will use: the user of `context` (else of the
/// current context); every user's when that cannot be told (the load fails later anyway).
pub fn credential_plugins(
    kc: &kube::config::Kubeconfig,
    context: Option<&str>,
) -> Vec<CredentialPlugin> {
    let ctx = context
        .map(str::to_string)
        .or_else(|| kc.current_context.clone());
    let user = ctx.and_then(|name| {
        kc.contexts
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone())
    });
    kc.auth_infos
        .iter()
        .filter(|a| user.as_ref().is_none_or(|u| *u == a.name))
        .flat_map(|a| {
            let info = a.auth_info.as_ref();
            let exec = info
                .and_then(|i| i.exec.as_ref())
                .map(|e| CredentialPlugin {
                    user: a.name.clone(),
                    kind: "exec",
                    what: e.command.clone().unwrap_or_default(),
                });
            let provider = info
                .and_then(|i| i.auth_provider.as_ref())
                .map(|p| CredentialPlugin {
                    user: a.name.clone(),
                    kind: "auth-provider",
                    what: p.name.clone(),
                });
            exec.into_iter().chain(provider)
        })
        .collect()
}

/// Under `sudo`, podnet runs as root and so would a kubeconfig's credential plugin: whoever can
/// write that file gets root. Plugins are refused in a kubeconfig podnet found by itself
/// (`KUBECONFIG`, `~/.kube/config`, the sudo user's), and accepted from `--kubeconfig FILE` only
/// when FILE is owned by the sudo user (`sudo_uid`) or root. `owner` gives a file's owner.
pub fn check_credential_plugins(
    choice: &ConfigChoice,
    sudo_uid: Option<u32>,
    plugins: &[CredentialPlugin],
    owner: impl Fn(&Path) -> Option<u32>,
) -> Result<(), DiscoverError> {
    let (Some(sudo_uid), Some(plugin)) = (sudo_uid, plugins.first()) else {
        return Ok(());
    };
    let refuse = |path: &Path, why: String| DiscoverError::CredentialPluginUnderSudo {
        path: path.to_path_buf(),
        user: plugin.user.clone(),
        kind: plugin.kind,
        what: plugin.what.clone(),
        why,
    };
    match choice {
        ConfigChoice::Flag(p) => match owner(p) {
            Some(o) if o == sudo_uid || o == 0 => Ok(()),
            Some(o) => Err(refuse(
                p,
                format!(
                    "--kubeconfig {} is owned by uid {o}, neither you (SUDO_UID {sudo_uid}) nor \
                     root, so its owner could make podnet run anything as root: chown it to \
                     yourself or root",
                    p.display()
                ),
            )),
            None => Err(refuse(
                p,
                format!("the owner of --kubeconfig {} cannot be read", p.display()),
            )),
        },
        ConfigChoice::EnvList(ps) => {
            let path = std::env::join_paths(ps)
                .map(PathBuf::from)
                .unwrap_or_else(|_| ps[0].clone());
            Err(refuse(&path, found_by_itself("KUBECONFIG", &path)))
        }
        ConfigChoice::Home(p) => Err(refuse(p, found_by_itself("~/.kube/config", p))),
        ConfigChoice::SudoUser { path, .. } => Err(refuse(
            path,
            found_by_itself("the sudo user's ~/.kube/config", path),
        )),
        ConfigChoice::InCluster | ConfigChoice::Nothing => Ok(()),
    }
}

fn found_by_itself(how: &str, path: &Path) -> String {
    format!(
        "podnet found this kubeconfig by itself ({how}); if you trust the plugin, pass the file \
         explicitly: sudo podnet stats --kubeconfig {} (it must be owned by you or root)",
        path.display()
    )
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
    sudo_uid: Option<u32>,
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
    check_credential_plugins(choice, sudo_uid, &credential_plugins(&kc, context), |p| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| m.uid())
    })?;
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
    fn sudo_invoker() {
        let uid_of = |u: &str| (u == "alice").then_some(1000);
        assert_eq!(
            sudo_invoker_uid(Some("1000"), Some("alice"), true, uid_of),
            Some(1000)
        );
        // SUDO_UID missing: SUDO_USER looked up.
        assert_eq!(
            sudo_invoker_uid(None, Some("alice"), true, uid_of),
            Some(1000)
        );
        // Not root (sudo -u someone, or variables left over), or sudo from root itself.
        assert_eq!(
            sudo_invoker_uid(Some("1000"), Some("alice"), false, uid_of),
            None
        );
        assert_eq!(
            sudo_invoker_uid(Some("0"), Some("root"), true, uid_of),
            None
        );
        assert_eq!(sudo_invoker_uid(None, None, true, uid_of), None);
        assert_eq!(sudo_invoker_uid(None, Some("bob"), true, uid_of), None);
    }

    fn kubeconfig_with(user: &str) -> kube::config::Kubeconfig {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n- name: other\n  context:\n    cluster: c\n    user: plain\nusers:\n- name: plain\n  user: {{token: t}}\n- name: u\n  user:\n{user}"
        );
        kube::config::Kubeconfig::from_yaml(&yaml).unwrap()
    }

    #[test]
    fn credential_plugins_of_the_user_in_use() {
        let exec = kubeconfig_with(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /usr/bin/aws-iam-authenticator\n",
        );
        let p = credential_plugins(&exec, None);
        assert_eq!(
            p,
            [CredentialPlugin {
                user: "u".into(),
                kind: "exec",
                what: "/usr/bin/aws-iam-authenticator".into()
            }]
        );
        // Another context's user has none.
        assert_eq!(credential_plugins(&exec, Some("other")), []);
        let provider = kubeconfig_with("    auth-provider:\n      name: oidc\n");
        assert_eq!(credential_plugins(&provider, None)[0].kind, "auth-provider");
        assert_eq!(credential_plugins(&provider, None)[0].what, "oidc");
        assert_eq!(
            credential_plugins(&kubeconfig_with("    token: t\n"), None),
            []
        );
    }

    #[test]
    fn credential_plugins_under_sudo_only_from_an_explicit_trusted_file() {
        let plugin = [CredentialPlugin {
            user: "u".into(),
            kind: "exec",
            what: "/usr/bin/helper".into(),
        }];
        let f = Path::new("/home/alice/kc");
        let owned_by = |uid: u32| move |_: &Path| Some(uid);
        let flag = ConfigChoice::Flag(f.into());
        // Not under sudo, or no plugin: nothing to check.
        assert!(check_credential_plugins(
            &ConfigChoice::Home(f.into()),
            None,
            &plugin,
            owned_by(7)
        )
        .is_ok());
        assert!(check_credential_plugins(
            &ConfigChoice::Home(f.into()),
            Some(1000),
            &[],
            owned_by(7)
        )
        .is_ok());
        // --kubeconfig owned by the sudo user or root: accepted.
        assert!(check_credential_plugins(&flag, Some(1000), &plugin, owned_by(1000)).is_ok());
        assert!(check_credential_plugins(&flag, Some(1000), &plugin, owned_by(0)).is_ok());
        // Owned by someone else: refused, naming the owner.
        let e = check_credential_plugins(&flag, Some(1000), &plugin, owned_by(1001))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("owned by uid 1001") && e.contains("as root"),
            "{e}"
        );
        // Found by podnet itself: refused whoever owns it, naming the risk and the flag.
        for choice in [
            ConfigChoice::EnvList(vec![f.into()]),
            ConfigChoice::Home(f.into()),
            ConfigChoice::SudoUser {
                user: "alice".into(),
                path: f.into(),
            },
        ] {
            let e =
                check_credential_plugins(&choice, Some(1000), &plugin, owned_by(1000)).unwrap_err();
            assert!(e.is_permanent());
            let e = e.to_string();
            assert!(
                e.starts_with(
                    "refusing the `exec` credential plugin (/usr/bin/helper) of user `u`"
                ),
                "{e}"
            );
            assert!(
                e.contains("as root") && e.contains("--kubeconfig /home/alice/kc"),
                "{e}"
            );
        }
        assert!(check_credential_plugins(
            &ConfigChoice::InCluster,
            Some(1000),
            &plugin,
            owned_by(5)
        )
        .is_ok());
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
            sudo_uid: Some(1000),
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
