//! The desktop app's Tauri commands over IPC (tauri's MockRuntime, no
//! window system), against a real admin API served in-process from a fresh
//! data directory: adding a device checks its token, bad addresses, wrong
//! tokens and unreachable devices are errors that remember nothing, the local
//! device is found through its data directory, and first-run setup runs
//! `roost init`'s library function.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;

/// A data directory with the admin API running in `_runtime`.
struct LocalDevice {
    _runtime: tokio::runtime::Runtime,
    address: String,
    token: String,
}

fn start_device(dir: &Path) -> LocalDevice {
    let store = roost::cli::init::init_data_dir(dir).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bound = runtime.block_on(async {
        let daemon = roost::serve::Daemon::new(store, roost::config::Config::default(), dir.to_path_buf());
        roost::admin::start(Arc::clone(&daemon), None, &["127.0.0.1:0".parse().unwrap()], None).await.unwrap()
    });
    let token = roost::admin::load_token(dir).unwrap().expose().to_string();
    LocalDevice { _runtime: runtime, address: bound[0].to_string(), token }
}

fn invoke(webview: &tauri::WebviewWindow<tauri::test::MockRuntime>, cmd: &str, args: Value) -> Result<Value, String> {
    let request = InvokeRequest {
        cmd: cmd.into(),
        callback: tauri::ipc::CallbackFn(0),
        error: tauri::ipc::CallbackFn(1),
        url: "tauri://localhost".parse().unwrap(),
        body: tauri::ipc::InvokeBody::Json(args),
        headers: Default::default(),
        invoke_key: INVOKE_KEY.to_string(),
    };
    match get_ipc_response(webview, request) {
        Ok(body) => Ok(body.deserialize::<Value>().unwrap()),
        Err(err) => Err(err.as_str().map(str::to_string).unwrap_or_else(|| err.to_string())),
    }
}

#[test]
fn commands_over_ipc() {
    let root = tempfile::tempdir().unwrap();
    let device = start_device(&root.path().join("device"));
    let app = roost_desktop::setup(mock_builder(), root.path().join("book/devices.json"))
        .build(mock_context(noop_assets()))
        .unwrap();
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default()).build().unwrap();

    assert_eq!(invoke(&webview, "list_devices", json!({})).unwrap(), json!([]));
    let wrong = "0".repeat(64);
    let err = invoke(&webview, "add_device", json!({"address": device.address, "token": wrong})).unwrap_err();
    assert!(err.contains("wrong admin token"), "{err}");
    let err = invoke(&webview, "add_device", json!({"address": "127.0.0.1:9", "token": wrong})).unwrap_err();
    assert!(err.contains("cannot reach 127.0.0.1:9"), "{err}");
    let err = invoke(&webview, "add_device", json!({"address": "no port", "token": wrong})).unwrap_err();
    assert!(err.contains("is not host:port"), "{err}");
    let err = invoke(&webview, "add_device", json!({"address": device.address, "token": "x y"})).unwrap_err();
    assert!(err.contains("64 hex digits"), "{err}");
    let err = invoke(&webview, "add_device", json!({"address": device.address})).unwrap_err();
    assert!(err.contains("token"), "a missing argument is an error: {err}");
    assert_eq!(invoke(&webview, "list_devices", json!({})).unwrap(), json!([]), "failures remembered nothing");

    let added = invoke(&webview, "add_device", json!({"address": device.address, "token": device.token})).unwrap();
    assert_eq!(added["address"], device.address.as_str());
    assert!(added.get("token").is_none(), "tokens stay on the Rust side: {added}");
    let listed = invoke(&webview, "list_devices", json!({})).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let url = invoke(&webview, "device_url", json!({"address": device.address})).unwrap();
    assert_eq!(url, json!(format!("http://{}/#token={}", device.address, device.token)));
    assert!(invoke(&webview, "device_url", json!({"address": "10.9.9.9:1"})).is_err());
    assert_eq!(invoke(&webview, "remove_device", json!({"address": device.address})).unwrap(), json!([]));
    let err = invoke(&webview, "remove_device", json!({"address": device.address})).unwrap_err();
    assert!(err.contains("no remembered device"), "{err}");

    // The device on this machine, by its data directory.
    let local = invoke(&webview, "add_local_device", json!({"dataDir": root.path().join("device")})).unwrap();
    assert_eq!(local["address"], device.address.as_str());
    let err = invoke(&webview, "add_local_device", json!({"dataDir": root.path().join("none")})).unwrap_err();
    assert!(err.contains("no running Roost daemon"), "{err}");

    // First-run setup of a new data directory.
    let fresh = root.path().join("fresh");
    let done = invoke(&webview, "setup_local", json!({"dataDir": fresh})).unwrap();
    assert!(done.as_str().unwrap().contains("roost --data-dir"), "{done}");
    assert!(fresh.join("admin.token").exists() && fresh.join("roost.db").exists());
    let err = invoke(&webview, "setup_local", json!({"dataDir": fresh})).unwrap_err();
    assert!(err.contains("already a Roost data directory"), "{err}");
    let err = invoke(&webview, "setup_local", json!({"dataDir": "relative/dir"})).unwrap_err();
    assert!(err.contains("not an absolute path"), "{err}");
}
