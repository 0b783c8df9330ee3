//! The `#[durable_object]` attribute: turns a type implementing `DurableObject` into the
//! class a dohost component exports.
//!
//! The macro is thin on purpose: it keeps the item as written and adds a hidden block that
//! names the type to the bindings generated once, in `dohost_sdk`. Everything else is
//! ordinary Rust in the SDK, so a missing trait method is an ordinary rustc error.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Item, parse_macro_input, spanned::Spanned};

/// The type an export attribute sits on, or an error spanned where the fix goes.
fn exported_type<'a>(
    args: TokenStream,
    item: &'a Item,
    attr: &str,
    trait_name: &str,
) -> syn::Result<&'a syn::Ident> {
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return Err(syn::Error::new(
            args.span(),
            format!("#[{attr}] takes no arguments; write `#[{attr}]` on the type"),
        ));
    }
    let (ident, generics) = match item {
        Item::Struct(s) => (&s.ident, &s.generics),
        Item::Enum(e) => (&e.ident, &e.generics),
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!("#[{attr}] goes on the struct or enum that implements {trait_name}"),
            ));
        }
    };
    if !generics.params.is_empty() {
        return Err(syn::Error::new(
            generics.span(),
            format!("a #[{attr}] type cannot be generic: the component exports one concrete type"),
        ));
    }
    Ok(ident)
}

/// Exports the annotated type as this component's Durable Object class.
///
/// The type must implement `dohost_sdk::DurableObject`. Put the attribute on exactly one
/// struct or enum per component crate (a component exports one class).
///
/// ```ignore
/// use dohost_sdk::{durable_object, DurableObject, Env, Request, Response, Result, State};
///
/// #[durable_object]
/// pub struct Hello { state: State }
///
/// impl DurableObject for Hello {
///     fn new(state: State, _env: Env) -> Self { Hello { state } }
///     fn fetch(&mut self, _req: Request) -> Result<Response> {
///         Ok(Response::text("hello"))
///     }
/// }
/// ```
/// Checks an attribute's use and returns the annotated type's name: no arguments, and a
/// non-generic struct or enum (a component exports one concrete type).
#[proc_macro_attribute]
pub fn durable_object(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = parse_macro_input!(input as Item);
    let ident = match exported_type(args, &item, "durable_object", "DurableObject") {
        Ok(ident) => ident,
        Err(e) => return e.to_compile_error().into(),
    };
    quote! {
        #item

        const _: () = {
            #[doc(hidden)]
            struct __DohostComponent;

            impl ::dohost_sdk::__private::Guest for __DohostComponent {
                type DurableObject = ::dohost_sdk::__private::Instance<#ident>;
            }

            ::dohost_sdk::__private::bindings::__export_object!(
                __DohostComponent with_types_in ::dohost_sdk::__private::bindings
            );
        };
    }
    .into()
}

/// Exports the annotated type as this component's stateless worker (the `worker` world).
///
/// The type must implement `dohost_sdk::Worker`.
///
/// ```ignore
/// #[worker]
/// struct Router;
///
/// impl Worker for Router {
///     fn fetch(req: Request, env: Env) -> Result<Response> { /* ... */ }
/// }
/// ```
#[proc_macro_attribute]
pub fn worker(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = parse_macro_input!(input as Item);
    let ident = match exported_type(args, &item, "worker", "Worker") {
        Ok(ident) => ident,
        Err(e) => return e.to_compile_error().into(),
    };
    quote! {
        #item

        const _: () = {
            #[doc(hidden)]
            struct __DohostWorker;

            impl ::dohost_sdk::__private::WorkerGuest for __DohostWorker {
                fn fetch(
                    request: ::dohost_sdk::__private::WitRequest,
                    env: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::dohost_sdk::__private::WitResponse {
                    ::dohost_sdk::__private::run_worker::<#ident>(request, env)
                }
            }

            ::dohost_sdk::__private::worker_bindings::__export_worker!(
                __DohostWorker with_types_in ::dohost_sdk::__private::worker_bindings
            );
        };
    }
    .into()
}
