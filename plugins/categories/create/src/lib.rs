//! `create`: Container Station's `POST container` as a task. The body is
//! described (and checked, and mapped to a `containers::ContainerSpec`) by
//! [`create_spec`]; see its docs for the choices made where Container Station
//! leaves room.
//!
//! Run: name the image as the `repository` has it ([`locate`]: a `qnap` or
//! `private` Docker image is `<registry>/<image>:<tag>`), `images::inspect`
//! it; when it is not found, `images::pull` it from the `repository`
//! (`dockerhub`, `qnap`, or `private` with `registry_name`); then
//! `containers::create` from that same reference and `containers::start`.
//! Progress: the pull reports its own; `create` reports each step around it.

pub use create_spec::{create_and_start, decode, plan, Body, CreateParams, Plan};
use stevedore_sdk::images::{self, PullRequest, Source};
use stevedore_sdk::{task, Category, Error, RuntimeKind};

/// The category.
pub struct Create;

/// Ask the host whether a `private` source names a configured registry, so
/// that an unknown `registry_name` is a 400 at submit time (DESIGN.md).
/// `dockerhub` and `qnap` are not asked: the seed's own LXC example uses
/// `qnap`, which must validate; a missing `qnap` registry fails the pull.
pub fn check_source(source: &Source) -> Result<(), Error> {
    match source {
        Source::Private(_) => images::resolve(source).map(|_| ()),
        Source::Dockerhub | Source::Qnap => Ok(()),
    }
}

/// Point the plan's container at the image its `repository` names: the
/// reference the engine gives the image when it pulls it from there
/// ([`Plan::source_reference`]), with the registry the host resolves.
pub fn locate(plan: &mut Plan) -> Result<(), Error> {
    // LXC images and Docker Hub's keep the name asked for: no registry to ask.
    let registry = match plan.source {
        Source::Qnap | Source::Private(_) if plan.spec.runtime == RuntimeKind::Docker => {
            images::resolve(&plan.source)?
        }
        _ => String::new(),
    };
    plan.spec.image = plan.source_reference(&registry);
    Ok(())
}

/// Make sure the plan's image (`spec.image`, see [`locate`]) is there:
/// inspect it, pull it when it is missing.
pub fn ensure_image(plan: &Plan) -> Result<(), Error> {
    let reference = plan.spec.image.clone();
    let runtime = plan.spec.runtime;
    task::progress(0, &format!("looking for image {reference}"));
    match images::inspect(runtime, &reference) {
        Ok(_) => Ok(()),
        Err(Error::NotFound(_)) => {
            task::progress(0, &format!("pulling image {reference}"));
            task::info(&format!("image {reference} is not present; pulling it"));
            images::pull(&PullRequest {
                runtime,
                image: plan.image.clone(),
                tag: plan.tag.clone(),
                source: plan.source.clone(),
                credential: None,
            })
            .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

impl Category for Create {
    const NAME: &'static str = "create";
    const SUMMARY: &'static str =
        "Create and start a container (Container Station's POST container), pulling its image first when missing";
    const CAPABILITIES: &'static [&'static str] = &["images", "containers"];
    type Params = Body;

    /// The body is read as a raw object (to keep the fields it does not
    /// know for the error message); its documented shape is `CreateParams`.
    fn params_schema() -> String {
        stevedore_sdk::schema_json::<CreateParams>()
    }

    fn validate(body: &Body) -> Result<(), Error> {
        check_source(&plan(&decode(body)?)?.source)
    }

    fn run(body: Body) -> Result<Option<String>, Error> {
        let mut plan = plan(&decode(&body)?)?;
        locate(&mut plan)?;
        ensure_image(&plan)?;
        create_and_start(&plan).map(Some)
    }
}

stevedore_sdk::category!(Create);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Plan, Error> {
        plan(&decode(&stevedore_sdk::decode::<Body>(json)?)?)
    }

    #[test]
    fn accepts_the_seed_bodies() {
        check(r#"{"type": "lxc", "repository": "qnap", "name": "ctest", "image": "ubuntu-trusty", "tag": "latest"}"#)
            .unwrap();
        let plan = check(
            r#"{"type": "docker", "repository": "dockerhub", "name": "dtest", "image": "ubuntu", "tag": "latest",
                "download": {"description": "I am description.", "location": "https://hub.docker.com/_/ubuntu/",
                             "icon": "http://download.qnap.com/QPKG/images/QPKG/container/ubuntu_icon.png"}}"#,
        )
        .unwrap();
        assert_eq!(plan.spec.image, "ubuntu:latest");
    }

    #[test]
    fn refuses_bad_bodies_naming_the_field() {
        match check(r#"{"name": "a", "image": "busybox"}"#) {
            Err(Error::InvalidParams(m)) => {
                assert_eq!(m, "name: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,63}$")
            }
            other => panic!("{other:?}"),
        }
        match check("[]") {
            Err(Error::InvalidParams(m)) => {
                assert_eq!(m, "params: invalid type: sequence, expected a map")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn describes_itself() {
        let d = stevedore_sdk::__describe::<Create>();
        assert_eq!(d.name, "create");
        assert!(!d.deletable);
        assert_eq!(d.capabilities, ["task", "images", "containers"]);
    }
}
