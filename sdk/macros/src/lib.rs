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
fn exported_type<'a>(item: &'a Item, attr: &str, trait_name: &str) -> syn::Result<&'a syn::Ident> {
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
    once_per_crate(ident, attr)?;
    Ok(ident)
}

/// A component exports one class (or one worker): a second export in the same crate would
/// otherwise fail at link time with duplicate `cabi_post_...` symbols. Expansions of one
/// crate's compilation share this process; the type's name keys it, so expanding the same
/// item again (an IDE does) is not a second export.
fn once_per_crate(ident: &syn::Ident, attr: &str) -> syn::Result<()> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static EXPORTED: Mutex<Option<HashMap<String, (String, String)>>> = Mutex::new(None);
    let krate = std::env::var("CARGO_CRATE_NAME").unwrap_or_default();
    // Doc tests of the SDK each build a crate of their own, all under the SDK's name.
    if krate.is_empty() || std::env::var_os("UNSTABLE_RUSTDOC_TEST_PATH").is_some() {
        return Ok(());
    }
    let mut exported = EXPORTED.lock().unwrap_or_else(|p| p.into_inner());
    let exported = exported.get_or_insert_with(HashMap::new);
    let this = (ident.to_string(), attr.to_string());
    match exported.get(&krate) {
        Some(first) if *first != this => Err(syn::Error::new(
            ident.span(),
            format!(
                "this crate already exports `{}` with #[{}]: a component exports one Durable \
                 Object class (or one worker); put `{ident}` in a crate of its own",
                first.0, first.1
            ),
        )),
        _ => {
            exported.insert(krate, this);
            Ok(())
        }
    }
}

/// Stops a build for another target with the fix, rather than link errors about
/// `cabi_post_...` symbols. Doc tests (built for the host, to check they compile) pass.
fn wasm_only() -> proc_macro2::TokenStream {
    if std::env::var_os("UNSTABLE_RUSTDOC_TEST_PATH").is_some() {
        return quote! {};
    }
    quote! {
        #[cfg(not(target_family = "wasm"))]
        ::core::compile_error!(
            "a dohost object or worker is a WebAssembly component: build it with \
             `cargo build --release --target wasm32-wasip2` (or set build.target in \
             .cargo/config.toml); its tests run on this machine with \
             `cargo test --target host-tuple` and dohost-testing"
        );
    }
}

/// `rpc(TraitA, TraitB)` from `#[durable_object(...)]`'s arguments.
fn rpc_traits(args: TokenStream) -> syn::Result<Vec<syn::Path>> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let meta: syn::Meta = syn::parse(args)?;
    let wrong = |span: proc_macro2::Span| {
        syn::Error::new(
            span,
            "#[durable_object] takes only `rpc(Trait, ...)`: the #[rpc] traits the object \
             serves",
        )
    };
    let syn::Meta::List(list) = &meta else {
        return Err(wrong(meta.span()));
    };
    if !list.path.is_ident("rpc") {
        return Err(wrong(list.path.span()));
    }
    let traits = list.parse_args_with(
        syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
    )?;
    Ok(traits.into_iter().collect())
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
///
/// `#[durable_object(rpc(Counting))]` also serves the methods of the `#[rpc]` trait
/// `Counting`, which the type implements, to callers holding a stub.
#[proc_macro_attribute]
pub fn durable_object(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = parse_macro_input!(input as Item);
    let traits = match rpc_traits(args) {
        Ok(traits) => traits,
        Err(e) => return e.to_compile_error().into(),
    };
    let ident = match exported_type(&item, "durable_object", "DurableObject") {
        Ok(ident) => ident,
        Err(e) => return e.to_compile_error().into(),
    };
    let wasm_only = wasm_only();
    quote! {
        #item

        #wasm_only

        impl ::dohost_sdk::__private::Methods for #ident {
            fn call(
                &mut self,
                method: &str,
                args: &[u8],
            ) -> ::core::option::Option<::dohost_sdk::Result<::std::vec::Vec<u8>>> {
                #(
                    if let ::core::option::Option::Some(answer) =
                        <Self as #traits>::__dohost_rpc_call(self, method, args)
                    {
                        return ::core::option::Option::Some(answer);
                    }
                )*
                let _ = (method, args);
                ::core::option::Option::None
            }
        }

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
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return syn::Error::new(args.span(), "#[worker] takes no arguments")
            .to_compile_error()
            .into();
    }
    let item = parse_macro_input!(input as Item);
    let ident = match exported_type(&item, "worker", "Worker") {
        Ok(ident) => ident,
        Err(e) => return e.to_compile_error().into(),
    };
    let wasm_only = wasm_only();
    quote! {
        #item

        #wasm_only

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

/// Declares typed methods objects call on each other (see `dohost_sdk::rpc`).
///
/// On a trait whose methods take `&self` or `&mut self`, owned arguments that serde can
/// encode and decode, and return `dohost_sdk::Result<T>`. Adds, hidden, the callee's
/// dispatch (used by `#[durable_object(rpc(Trait))]`) and implements the trait for
/// `dohost_sdk::Stub`, so a caller calls the methods on a stub.
///
/// ```ignore
/// #[rpc]
/// pub trait Counting {
///     fn increment(&mut self, by: i64) -> Result<i64>;
/// }
/// ```
#[proc_macro_attribute]
pub fn rpc(args: TokenStream, input: TokenStream) -> TokenStream {
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return syn::Error::new(args.span(), "#[rpc] takes no arguments")
            .to_compile_error()
            .into();
    }
    let mut item = parse_macro_input!(input as syn::ItemTrait);
    match rpc_expand(&mut item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn rpc_expand(item: &mut syn::ItemTrait) -> syn::Result<proc_macro2::TokenStream> {
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "an #[rpc] trait cannot be generic: its methods are called by name",
        ));
    }
    let trait_name = &item.ident;
    let mut arms = Vec::new();
    let mut stub_methods = Vec::new();
    for entry in &item.items {
        let syn::TraitItem::Fn(method) = entry else {
            return Err(syn::Error::new(
                entry.span(),
                "an #[rpc] trait holds methods only",
            ));
        };
        let sig = &method.sig;
        let name = &sig.ident;
        let wire = format!("{trait_name}.{name}");
        let Some(syn::FnArg::Receiver(receiver)) = sig.inputs.first() else {
            return Err(syn::Error::new(
                sig.span(),
                "an #[rpc] method takes `&self` or `&mut self` (it runs on the object)",
            ));
        };
        if receiver.reference.is_none() {
            return Err(syn::Error::new(
                receiver.span(),
                "an #[rpc] method takes `&self` or `&mut self`, not `self`",
            ));
        }
        if sig.asyncness.is_some() || !sig.generics.params.is_empty() {
            return Err(syn::Error::new(
                sig.span(),
                "an #[rpc] method cannot be async or generic",
            ));
        }
        let mut args = Vec::new();
        let mut types = Vec::new();
        for (i, input) in sig.inputs.iter().skip(1).enumerate() {
            let syn::FnArg::Typed(arg) = input else {
                unreachable!("only the first input is a receiver")
            };
            args.push(quote::format_ident!("__arg{i}"));
            types.push(arg.ty.clone());
        }
        let output = match &sig.output {
            syn::ReturnType::Type(_, ty) => ty.clone(),
            syn::ReturnType::Default => {
                return Err(syn::Error::new(
                    sig.span(),
                    "an #[rpc] method returns `dohost_sdk::Result<T>` (a call can fail)",
                ));
            }
        };
        arms.push(quote! {
            #wire => ::core::option::Option::Some((|| {
                let (#(#args,)*): (#(#types,)*) =
                    ::dohost_sdk::rpc::decode_args(#wire, args)?;
                let result = self.#name(#(#args),*)?;
                ::dohost_sdk::rpc::encode_result(#wire, &result)
            })()),
        });
        let receiver = &sig.inputs[0];
        stub_methods.push(quote! {
            fn #name(#receiver, #(#args: #types),*) -> #output {
                ::dohost_sdk::Stub::call(self, #wire, &(#(#args,)*))
            }
        });
    }
    item.items.push(syn::parse_quote! {
        #[doc(hidden)]
        fn __dohost_rpc_call(
            &mut self,
            method: &str,
            args: &[u8],
        ) -> ::core::option::Option<::dohost_sdk::Result<::std::vec::Vec<u8>>>
        where
            Self: Sized,
        {
            match method {
                #(#arms)*
                _ => ::core::option::Option::None,
            }
        }
    });
    Ok(quote! {
        #item

        impl #trait_name for ::dohost_sdk::Stub {
            #(#stub_methods)*
        }
    })
}
