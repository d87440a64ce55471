//! Tests of the INF reader and install plan, on small INFs and on the project's `driver.inx`.

use super::*;

/// The project's INF template, stamped for amd64 as `stampinf` does (the date is irrelevant here).
fn vigil_inf() -> Inf {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../driver.inx"))
            .expect("driver.inx");
    Inf::parse(&template.replace("$ARCH$", "amd64")).expect("driver.inx parses")
}

fn set_value<'a>(plan: &'a InstallPlan, key_suffix: &str, name: &str) -> Option<&'a RegAction> {
    plan.writes.iter().find_map(|write| match &write.action {
        action @ RegAction::Set { name: n, .. }
            if n.eq_ignore_ascii_case(name) && write.key.ends_with(key_suffix) =>
        {
            Some(action)
        }
        _ => None,
    })
}

fn data<'a>(plan: &'a InstallPlan, key_suffix: &str, name: &str) -> Option<&'a RegData> {
    match set_value(plan, key_suffix, name)? {
        RegAction::Set { data, .. } => Some(data),
        _ => None,
    }
}

#[test]
fn syntax_comments_quotes_continuations_and_strings() {
    let inf = Inf::parse(
        "; leading comment\r\n\
         [Version]\r\n\
         Signature = \"$WINDOWS NT$\" ; trailing\r\n\
         [a.section]\r\n\
         Key = \"semi;colon\", %Name%, 100%%, %12%\\x.sys, \\\r\n\
         \x20     continued\r\n\
         [Strings]\r\n\
         name = \"Quoted \"\"word\"\"\"\r\n",
    )
    .expect("parses");
    let fields = inf.directive_fields("A.Section", "key").expect("fields")[0].clone();
    assert_eq!(
        fields,
        [
            "semi;colon",
            "Quoted \"word\"",
            "100%",
            r"\SystemRoot\System32\drivers\x.sys",
            "continued"
        ]
    );
    assert_eq!(
        inf.substitute("%missing%"),
        Err(InfError::UnknownString("missing".to_owned()))
    );
    assert!(matches!(
        Inf::parse("Key = before any section"),
        Err(InfError::Syntax { line: 1, .. })
    ));
    assert!(matches!(
        Inf::parse("[Broken"),
        Err(InfError::Syntax { .. })
    ));
}

/// The decoration rules: the section closest to the host wins; the build is compared only
/// when major.minor match; another platform never applies.
#[test]
fn decorated_sections_are_chosen_for_the_build() {
    let inf = Inf::parse(
        "[DefaultInstall.NTamd64.10.0...25952]\n[DefaultInstall.NTamd64]\n[DefaultInstall.NTx86]\n\
         [DefaultInstall]\n",
    )
    .expect("parses");
    let pick = |build| {
        inf.select_section("DefaultInstall", WindowsBuild(build))
            .expect("applies")
    };
    assert_eq!(pick(19041), "DefaultInstall.NTamd64");
    assert_eq!(pick(22621), "DefaultInstall.NTamd64");
    assert_eq!(pick(25951), "DefaultInstall.NTamd64");
    assert_eq!(pick(25952), "DefaultInstall.NTamd64.10.0...25952");
    assert_eq!(pick(26100), "DefaultInstall.NTamd64.10.0...25952");

    // A versioned generic section beats a platform-only one (step 1 before step 2).
    let inf =
        Inf::parse("[DefaultInstall.NT.10.0...14393]\n[DefaultInstall.NTamd64]\n").expect("parses");
    assert_eq!(
        inf.select_section("DefaultInstall", WindowsBuild(19041))
            .expect("applies"),
        "DefaultInstall.NT.10.0...14393"
    );
    // A server-only or future-version section never applies to the emulated workstation.
    let inf = Inf::parse(
        "[DefaultInstall.NTamd64.10.0.3]\n[DefaultInstall.NTamd64.11.0]\n[DefaultInstall.NTx86]\n",
    )
    .expect("parses");
    assert_eq!(
        inf.select_section("DefaultInstall", WindowsBuild(26100)),
        Err(InfError::NoApplicableSection {
            base: "DefaultInstall".to_owned(),
            build: WindowsBuild(26100)
        })
    );
}

/// RULES.md rule 30: the stamped INF writes the instances where each build reads them, and the
/// same service and settings on every build.
#[test]
fn vigil_inf_installs_instances_where_each_build_reads_them() {
    let inf = vigil_inf();
    for build in [
        WindowsBuild::WIN10_2004,
        WindowsBuild::WIN11_22H2,
        WindowsBuild::WIN11_24H2,
    ] {
        let plan = inf.install_plan(build).expect("installs");
        assert_eq!(plan.service, "vigil");
        assert_eq!(plan.service_key, format!(r"{SERVICES_KEY}\vigil"));
        assert_eq!(plan.files, ["vigil.sys"]);
        let instances = match build.instances_parent() {
            "" => r"\vigil\Instances".to_owned(),
            parent => format!(r"\vigil\{parent}\Instances"),
        };
        assert_eq!(
            data(&plan, &instances, "DefaultInstance"),
            Some(&RegData::Sz("Vigil Instance".to_owned())),
            "{build}: DefaultInstance under {instances}"
        );
        let instance = format!(r"{instances}\Vigil Instance");
        assert_eq!(
            data(&plan, &instance, "Altitude"),
            Some(&RegData::Sz("385100".to_owned()))
        );
        assert_eq!(data(&plan, &instance, "Flags"), Some(&RegData::Dword(0)));
        // Nothing is written where this build's Filter Manager does not look.
        let elsewhere = if build.instances_parent().is_empty() {
            r"\vigil\Parameters\Instances"
        } else {
            r"\vigil\Instances"
        };
        assert!(
            !plan.writes.iter().any(|w| w.key.ends_with(elsewhere)),
            "{build}: writes under {elsewhere}"
        );
        // The same service and settings everywhere.
        assert_eq!(data(&plan, r"\vigil", "Type"), Some(&RegData::Dword(2)));
        assert_eq!(data(&plan, r"\vigil", "Start"), Some(&RegData::Dword(3)));
        assert_eq!(
            data(&plan, r"\vigil", "ErrorControl"),
            Some(&RegData::Dword(1))
        );
        assert_eq!(
            data(&plan, r"\vigil", "Group"),
            Some(&RegData::Sz("FSFilter Activity Monitor".to_owned()))
        );
        assert_eq!(
            data(&plan, r"\vigil", "DependOnService"),
            Some(&RegData::MultiSz(vec!["FltMgr".to_owned()]))
        );
        assert!(matches!(
            data(&plan, r"\vigil", "ImagePath"),
            Some(RegData::ExpandSz(path)) if path.starts_with(r"\SystemRoot\System32\DriverStore\FileRepository\")
                && path.ends_with(r"\vigil.sys")
        ));
        assert_eq!(
            set_value(&plan, r"\vigil\Parameters", "RingBytes"),
            Some(&RegAction::Set {
                name: "RingBytes".to_owned(),
                data: RegData::Dword(4_194_304),
                no_clobber: true,
                overwrite_only: false,
            }),
            "{build}: settings keep what an administrator set (FLG_ADDREG_NOCLOBBER)"
        );
    }
}

#[test]
fn addreg_flags_and_types() {
    let inf = Inf::parse(
        "[DefaultInstall]\nCopyFiles = @f.sys\n[DefaultInstall.Services]\nAddService = svc,,Svc\n\
         [Svc]\nServiceType = 2\nStartType = 3\nErrorControl = 1\nServiceBinary = %12%\\f.sys\n\
         Dependencies = FltMgr, +\"FSFilter Infrastructure\"\nAddReg = R\n\
         [R]\n\
         HKR,,\"Sz\",0,\"text\"\n\
         HKR,\"K\",\"Expand\",0x00020000,\"%%SystemRoot%%\"\n\
         HKR,\"K\",\"Multi\",0x00010000,\"a\",\"b\"\n\
         HKR,\"K\",\"Added\",0x00010008,\"c\"\n\
         HKR,\"K\",\"Dword\",0x00010003,0x10\n\
         HKR,\"K\",\"Bin\",0x00000001,01,ff\n\
         HKR,\"K\",\"Gone\",0x00000004\n\
         HKR,\"Only\",,0x00000010\n\
         HKR,\"K\",\"Over\",0x00000020,\"x\"\n",
    )
    .expect("parses");
    let plan = inf.install_plan(WindowsBuild(19041)).expect("installs");
    assert_eq!(plan.files, ["f.sys"]);
    assert_eq!(
        data(&plan, r"\svc", "ImagePath"),
        Some(&RegData::ExpandSz(
            r"\SystemRoot\System32\drivers\f.sys".to_owned()
        ))
    );
    assert_eq!(
        data(&plan, r"\svc", "DependOnGroup"),
        Some(&RegData::MultiSz(vec![
            "FSFilter Infrastructure".to_owned()
        ]))
    );
    assert_eq!(
        data(&plan, r"\svc", "Sz"),
        Some(&RegData::Sz("text".to_owned()))
    );
    assert_eq!(
        data(&plan, r"\svc\K", "Expand"),
        Some(&RegData::ExpandSz("%SystemRoot%".to_owned()))
    );
    assert_eq!(
        data(&plan, r"\svc\K", "Multi"),
        Some(&RegData::MultiSz(vec!["a".to_owned(), "b".to_owned()]))
    );
    assert_eq!(
        data(&plan, r"\svc\K", "Bin"),
        Some(&RegData::Binary(vec![1, 0xff]))
    );
    assert!(matches!(
        set_value(&plan, r"\svc\K", "Dword"),
        Some(RegAction::Set {
            data: RegData::Dword(16),
            no_clobber: true,
            ..
        })
    ));
    assert!(matches!(
        set_value(&plan, r"\svc\K", "Over"),
        Some(RegAction::Set {
            overwrite_only: true,
            no_clobber: false,
            ..
        })
    ));
    let actions: Vec<&RegAction> = plan.writes.iter().map(|w| &w.action).collect();
    assert!(actions.contains(&&RegAction::Append {
        name: "Added".to_owned(),
        strings: vec!["c".to_owned()]
    }));
    assert!(actions.contains(&&RegAction::Delete {
        name: "Gone".to_owned()
    }));
    assert!(
        plan.writes
            .iter()
            .any(|w| w.key.ends_with(r"\svc\Only") && w.action == RegAction::CreateKey)
    );
}

#[test]
fn bad_installs_are_refused_with_the_reason() {
    let base = "[DefaultInstall]\n[DefaultInstall.Services]\nAddService = svc,,Svc\n";
    let refuse = |text: &str| {
        Inf::parse(text)
            .expect("parses")
            .install_plan(WindowsBuild(19041))
            .expect_err("refused")
            .to_string()
    };
    assert!(refuse(base).contains("[Svc] is referenced but missing"));
    assert!(refuse(&format!("{base}[Svc]\nStartType = 3\n")).contains("ServiceType is required"));
    let service =
        "[Svc]\nServiceType = 2\nStartType = 3\nErrorControl = 1\nServiceBinary = %12%\\f.sys\n";
    assert!(
        refuse(&format!(
            "{base}{service}AddReg = R\n[R]\nHKLM,\"X\",\"V\",0,\"v\"\n"
        ))
        .contains("may only use HKR")
    );
    assert!(
        refuse(&format!(
            "{base}{service}AddReg = R\n[R]\nHKR,,\"V\",0x00030000,\"v\"\n"
        ))
        .contains("not emulated")
    );
    assert!(
        refuse(&format!(
            "{base}{service}AddReg = R\n[R]\nHKR,,\"V\",0x00010001,\"ten\"\n"
        ))
        .contains("DWORD value")
    );
    assert!(refuse("[DefaultInstall.NTx86]\n").contains("no [DefaultInstall] section applies"));
}

/// A plan of the given writes on one key.
fn plan_of(actions: Vec<RegAction>) -> InstallPlan {
    InstallPlan {
        install_section: "DefaultInstall".into(),
        service: "svc".into(),
        service_key: format!(r"{SERVICES_KEY}\svc"),
        files: Vec::new(),
        writes: actions
            .into_iter()
            .map(|action| RegWrite {
                key: format!(r"{SERVICES_KEY}\svc\Parameters"),
                action,
            })
            .collect(),
    }
}

fn set(name: &str, value: u32, no_clobber: bool, overwrite_only: bool) -> RegAction {
    RegAction::Set {
        name: name.into(),
        data: RegData::Dword(value),
        no_clobber,
        overwrite_only,
    }
}

#[test]
fn applying_a_plan_follows_addregs_flags() {
    let key = format!(r"{SERVICES_KEY}\SVC\parameters");
    let mut registry = Registry::default();
    plan_of(vec![
        RegAction::CreateKey,
        set("Plain", 1, false, false),
        set("Kept", 1, true, false),
        set("OnlyOver", 1, false, true),
        RegAction::Append {
            name: "List".into(),
            strings: vec!["a".into(), "b".into()],
        },
    ])
    .apply(&mut registry);
    assert_eq!(
        registry.value(&key, "plain"),
        Some(&RegistryValue::Dword(1))
    );
    assert_eq!(registry.value(&key, "Kept"), Some(&RegistryValue::Dword(1)));
    assert_eq!(
        registry.value(&key, "OnlyOver"),
        None,
        "OVERWRITEONLY writes nothing where no value exists"
    );
    assert!(
        registry.key(&format!(r"{SERVICES_KEY}\svc")).is_some(),
        "the ancestors are created"
    );

    plan_of(vec![
        set("Plain", 2, false, false),
        set("Kept", 2, true, false),
        RegAction::Append {
            name: "List".into(),
            strings: vec!["B".into(), "c".into()],
        },
        RegAction::Delete {
            name: "Plain".into(),
        },
    ])
    .apply(&mut registry);
    registry.set_value(&key, "OnlyOver", RegistryValue::Dword(7));
    plan_of(vec![set("OnlyOver", 3, false, true)]).apply(&mut registry);
    assert_eq!(registry.value(&key, "Plain"), None, "DELVAL deletes");
    assert_eq!(
        registry.value(&key, "Kept"),
        Some(&RegistryValue::Dword(1)),
        "NOCLOBBER keeps the existing value"
    );
    assert_eq!(
        registry.value(&key, "OnlyOver"),
        Some(&RegistryValue::Dword(3)),
        "OVERWRITEONLY replaces an existing value"
    );
    assert_eq!(
        registry.value(&key, "List"),
        Some(&RegistryValue::MultiSz(vec![
            "a".into(),
            "b".into(),
            "c".into()
        ])),
        "APPEND adds only the strings the list lacks"
    );
    assert_eq!(
        registry.subkeys(&format!(r"{SERVICES_KEY}\svc")),
        vec!["Parameters".to_owned()]
    );
}

#[test]
fn installing_records_the_service_and_the_build() {
    let mut config = SimConfig {
        service_name: "other".into(),
        ..SimConfig::default()
    };
    let plan = install(&mut config, &vigil_inf(), WindowsBuild::WIN10_2004).expect("installs");
    assert_eq!(config.service_name, "vigil");
    assert_eq!(config.windows_build, WindowsBuild::WIN10_2004);
    let registry = config.machine_registry.as_ref().expect("a registry");
    assert_eq!(
        registry.value(
            &format!(r"{}\Instances\Vigil Instance", plan.service_key),
            "Altitude"
        ),
        Some(&RegistryValue::Sz("385100".into()))
    );
    assert_eq!(
        registry.value(&plan.service_key, "Start"),
        Some(&RegistryValue::Dword(3)),
        "AddService writes the service's values"
    );
}
