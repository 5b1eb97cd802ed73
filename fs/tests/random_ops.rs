//! Random sequences of operations, checked step by step against an in-memory model; the
//! volume must then pass `fsck.fat -n`, keep its FAT copies equal, and extract with
//! mcopy to exactly the model.

mod common;

use std::collections::BTreeMap;

use common::*;
use fs::{Error, OpenOptions, SeekFrom};

/// The model: lower-cased path to (path as created, `None` for a directory or contents).
type Model = BTreeMap<String, (String, Option<Vec<u8>>)>;

const NAMES: [&str; 12] = [
    "a.txt",
    "B.TXT",
    "long file name one.text",
    "Long File Name Two.text",
    "data",
    "x.y.z",
    "ünïcödé.bin",
    "CamelCase.Dat",
    "twelve chars",
    "12345678.123",
    "dir",
    "Another Folder",
];

fn key(path: &str) -> String {
    path.to_lowercase()
}

fn directories(model: &Model) -> Vec<String> {
    let mut dirs = vec![String::new()];
    dirs.extend(
        model
            .values()
            .filter(|(_, c)| c.is_none())
            .map(|(p, _)| p.clone()),
    );
    dirs
}

fn files(model: &Model) -> Vec<String> {
    model
        .values()
        .filter(|(_, c)| c.is_some())
        .map(|(p, _)| p.clone())
        .collect()
}

fn run_sequence(seed: u64, steps: usize) {
    let dir = temp_dir(&format!("random-{seed}"));
    let image = dir.join("random.img");
    mkfs(&image, 4096, &["-s", "1"]);
    let mut volume = mount_image(&image);
    let mut model = Model::new();
    let mut rng = Rng::new(seed);
    for step in 0..steps {
        let dirs = directories(&model);
        let existing_files = files(&model);
        let base = rng.pick(&dirs).clone();
        let fresh_path = format!("{base}/{}", rng.pick(&NAMES));
        let context = format!("seed {seed} step {step}");
        match rng.below(10) {
            0 | 1 => {
                let length = rng.below(6000) as usize;
                let data = rng.bytes(length);
                let result = volume.write_file(&fresh_path, &data);
                match model.get(&key(&fresh_path)) {
                    Some((_, None)) => assert_eq!(result, Err(Error::IsADirectory), "{context}"),
                    Some((original, Some(_))) => {
                        result.unwrap();
                        let original = original.clone();
                        model.insert(key(&fresh_path), (original, Some(data)));
                    }
                    None => {
                        result.unwrap();
                        model.insert(key(&fresh_path), (fresh_path.clone(), Some(data)));
                    }
                }
            }
            2 | 3 if !existing_files.is_empty() => {
                let path = rng.pick(&existing_files).clone();
                let (_, contents) = model.get_mut(&key(&path)).unwrap();
                let contents = contents.as_mut().unwrap();
                let mut file = volume
                    .open(&path.to_uppercase(), OpenOptions::write())
                    .unwrap();
                let offset = rng.below(contents.len() as u64 + 1500);
                let length = rng.below(3000) as usize;
                let data = rng.bytes(length);
                volume.seek(&mut file, SeekFrom::Start(offset)).unwrap();
                volume.write(&mut file, &data).unwrap();
                let end = offset as usize + data.len();
                if !data.is_empty() {
                    if contents.len() < end {
                        contents.resize(end, 0);
                    }
                    contents[offset as usize..end].copy_from_slice(&data);
                }
            }
            4 if !existing_files.is_empty() => {
                let path = rng.pick(&existing_files).clone();
                let (_, contents) = model.get_mut(&key(&path)).unwrap();
                let contents = contents.as_mut().unwrap();
                let length = rng.below(contents.len() as u64 * 2 + 10) as usize;
                let mut file = volume.open(&path, OpenOptions::write()).unwrap();
                volume.set_len(&mut file, length as u64).unwrap();
                contents.resize(length, 0);
            }
            5 => {
                let result = volume.create_dir(&fresh_path);
                match model.entry(key(&fresh_path)) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        assert_eq!(result, Err(Error::AlreadyExists), "{context}")
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        result.unwrap();
                        slot.insert((fresh_path.clone(), None));
                    }
                }
            }
            6 => {
                let result = volume.remove_file(&fresh_path);
                match model.get(&key(&fresh_path)) {
                    None => assert_eq!(result, Err(Error::NotFound), "{context}"),
                    Some((_, None)) => assert_eq!(result, Err(Error::IsADirectory), "{context}"),
                    Some(_) => {
                        result.unwrap();
                        model.remove(&key(&fresh_path));
                    }
                }
            }
            7 if dirs.len() > 1 => {
                let path = rng.pick(&dirs[1..]).clone();
                let prefix = format!("{}/", key(&path));
                let empty = !model.keys().any(|k| k.starts_with(&prefix));
                let result = volume.remove_dir(&path);
                if empty {
                    result.unwrap();
                    model.remove(&key(&path));
                } else {
                    assert_eq!(result, Err(Error::DirectoryNotEmpty), "{context}");
                }
            }
            8 if !model.is_empty() => {
                let all: Vec<String> = model.values().map(|(p, _)| p.clone()).collect();
                let from = rng.pick(&all).clone();
                let to = fresh_path.clone();
                let from_key = key(&from);
                let result = volume.rename(&from, &to);
                let to_key = key(&to);
                let into_itself = to_key.starts_with(&format!("{from_key}/"));
                if into_itself {
                    assert!(
                        matches!(result, Err(Error::InvalidArgument(_))),
                        "{context}: {result:?}"
                    );
                } else if model.contains_key(&to_key) && to_key != from_key {
                    assert_eq!(result, Err(Error::AlreadyExists), "{context}");
                } else {
                    result.unwrap_or_else(|e| panic!("{context}: rename {from} -> {to}: {e}"));
                    let moved: Vec<String> = model
                        .keys()
                        .filter(|k| **k == from_key || k.starts_with(&format!("{from_key}/")))
                        .cloned()
                        .collect();
                    for old_key in moved {
                        let (old_path, contents) = model.remove(&old_key).unwrap();
                        let new_path = format!("{to}{}", &old_path[from.len()..]);
                        model.insert(key(&new_path), (new_path, contents));
                    }
                }
            }
            _ => {
                if let Some(path) = existing_files.first() {
                    let (_, contents) = &model[&key(path)];
                    assert_eq!(
                        &volume.read_file(path).unwrap(),
                        contents.as_ref().unwrap(),
                        "{context}"
                    );
                }
            }
        }
        if step % 50 == 0 {
            check_against_model(&mut volume, &model, &context);
        }
    }
    check_against_model(&mut volume, &model, &format!("seed {seed} end"));
    let stored: usize = model
        .values()
        .filter_map(|(_, c)| c.as_ref().map(Vec::len))
        .sum();
    println!(
        "seed {seed}: {} entries, {stored} bytes at the end",
        model.len()
    );
    save_image(volume, &image);
    assert_fsck_clean(&image);
    let bytes = std::fs::read(&image).unwrap();
    let fat_sectors = u16::from_le_bytes([bytes[22], bytes[23]]) as usize;
    let reserved = u16::from_le_bytes([bytes[14], bytes[15]]) as usize;
    let fat = |copy: usize| {
        &bytes[(reserved + copy * fat_sectors) * 512..(reserved + (copy + 1) * fat_sectors) * 512]
    };
    assert!(fat(0) == fat(1), "seed {seed}: FAT copies differ");
    let extracted = host_tree(&mcopy_out(&image, "random-out"));
    assert_same_tree(
        &extracted,
        &model_tree(&model),
        &format!("seed {seed}: mcopy vs model"),
    );
}

fn model_tree(model: &Model) -> Tree {
    model
        .values()
        .map(|(path, contents)| (path.clone(), contents.clone()))
        .collect()
}

fn check_against_model(volume: &mut TestVolume, model: &Model, context: &str) {
    assert_same_tree(&volume_tree(volume), &model_tree(model), context);
}

#[test]
fn random_operations_match_the_model_and_fsck() {
    for seed in 1..=12 {
        run_sequence(seed, 600);
    }
}
