//! `TestApp`: a temporary folder holding a satflow setup, and the real binary run inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestApp {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What a run of the binary printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `path:line:col: message` lines.
    pub fn problems(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.contains(".yaml:") || l.contains(".yml:"))
            .collect()
    }
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

impl TestApp {
    /// An empty folder.
    pub fn empty() -> TestApp {
        TestApp {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// A copy of `tests/corpus/base`: a good satflow.yaml, the files it names, one good workflow.
    pub fn with_base() -> TestApp {
        let app = TestApp::empty();
        copy_dir(&corpus_dir().join("base"), app.path());
        app
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.push((name.into(), value.into()));
    }

    /// Runs `satflow ARGS` in the app's folder with a clean environment (only PATH, HOME and
    /// what `set_env` added), so no variable of the developer's shell leaks into a test.
    pub fn satflow(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_satflow"));
        cmd.args(args).current_dir(self.path()).env_clear();
        for name in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().expect("run satflow");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
