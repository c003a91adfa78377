//! Every standard profile field, imported through the real pipeline into the simulator, whose
//! field table is its own copy of the spec (§3.2): what Chat ends up holding is compared with
//! values written out here by hand, tag names and enum spellings included. A tag, kind or enum
//! value the importer gets wrong is refused by the simulator or lands under the wrong tag, and
//! this test fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use profile_import::chat::client::{ChatClient, ClientTuning};
use profile_import::chat::retry::RetryPolicy;
use profile_import::chat::usersig::SecretKey;
use profile_import::run::send::{self, SendSettings};
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::{plain_job, sim_connection, Workspace};

const APP: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";
const KEY: &str = "standard-fields-test-key";

const CSV: &str = "\
UserID,Nick,Gender,BirthDay,Location,SelfSignature,AllowType,Language,Image,AdminForbidType,Level,Role,MsgSettings
ann,Ann,f,1990-01-02,\"Kuala Lumpur, Malaysia\",hello,deny,2,https://example.com/a.png,send_out,3,4,1
bob,Bob,male,20000229,Oslo,hi there,allow_any,0,https://example.com/b.png,none,0,255,0
cy,Cy,Gender_Type_Unknown,19700101,Lima,,AllowType_Type_NeedConfirm,4294967295,,AdminForbid_Type_SendOut,4294967295,0,
";

/// What Chat must hold afterwards, written out from the spec's table (§3.2).
fn expected() -> BTreeMap<String, BTreeMap<String, Value>> {
    let profiles = json!({
        "ann": {
            "Tag_Profile_IM_Nick": "Ann",
            "Tag_Profile_IM_Gender": "Gender_Type_Female",
            "Tag_Profile_IM_BirthDay": 19900102,
            "Tag_Profile_IM_Location": "Kuala Lumpur, Malaysia",
            "Tag_Profile_IM_SelfSignature": "hello",
            "Tag_Profile_IM_AllowType": "AllowType_Type_DenyAny",
            "Tag_Profile_IM_Language": 2,
            "Tag_Profile_IM_Image": "https://example.com/a.png",
            "Tag_Profile_IM_AdminForbidType": "AdminForbid_Type_SendOut",
            "Tag_Profile_IM_Level": 3,
            "Tag_Profile_IM_Role": 4,
            "Tag_Profile_IM_MsgSettings": 1,
        },
        "bob": {
            "Tag_Profile_IM_Nick": "Bob",
            "Tag_Profile_IM_Gender": "Gender_Type_Male",
            "Tag_Profile_IM_BirthDay": 20000229,
            "Tag_Profile_IM_Location": "Oslo",
            "Tag_Profile_IM_SelfSignature": "hi there",
            "Tag_Profile_IM_AllowType": "AllowType_Type_AllowAny",
            "Tag_Profile_IM_Language": 0,
            "Tag_Profile_IM_Image": "https://example.com/b.png",
            "Tag_Profile_IM_AdminForbidType": "AdminForbid_Type_None",
            "Tag_Profile_IM_Level": 0,
            "Tag_Profile_IM_Role": 255,
            "Tag_Profile_IM_MsgSettings": 0,
        },
        // Empty cells are not sent (the default `--empty skip`).
        "cy": {
            "Tag_Profile_IM_Nick": "Cy",
            "Tag_Profile_IM_Gender": "Gender_Type_Unknown",
            "Tag_Profile_IM_BirthDay": 19700101,
            "Tag_Profile_IM_Location": "Lima",
            "Tag_Profile_IM_AllowType": "AllowType_Type_NeedConfirm",
            "Tag_Profile_IM_Language": 4294967295u64,
            "Tag_Profile_IM_AdminForbidType": "AdminForbid_Type_SendOut",
            "Tag_Profile_IM_Level": 4294967295u64,
            "Tag_Profile_IM_Role": 0,
        },
    });
    serde_json::from_value(profiles).expect("a map of profiles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_standard_field_reaches_chat_under_its_spec_tag_and_spelling() {
    let ws = Workspace::new();
    let sim = SimHandle::start(SimConfig::new(APP, ADMIN, SecretKey::new(KEY)))
        .await
        .expect("start the simulator");
    let csv = ws.write("users.csv", CSV);
    let failures = ws.path("users.failures.csv");
    let job = plain_job(&csv, failures.clone(), ws.path("users.journal"));
    let connection = sim_connection(&sim.url(), APP, ADMIN, KEY);
    let client = ChatClient::new(connection, ClientTuning::default()).expect("a client");
    let settings = SendSettings {
        rate: 200,
        concurrency: 4,
        retry: RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        show_progress: false,
        quiet: true,
        progress_interval: Duration::from_secs(3600),
        max_errors: None,
        read_rate: 200,
        live: Default::default(),
    };
    let report = send::run(&job, Arc::new(client), settings, CancellationToken::new())
        .await
        .expect("the import runs to its end");
    let s = &report.summary;
    let failed = std::fs::read_to_string(&failures).unwrap_or_default();
    assert_eq!((s.rows, s.ok, s.failed), (3, 3, 0), "{s}\n{failed}");
    assert_eq!(sim.profiles(), expected());
    assert_eq!(sim.stats().count("0"), 3);
}
